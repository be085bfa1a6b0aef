"""Portal pages of grants: follow one, give it back, revoke, review break-glass; the elevation review.

The path of a grant's page is fixed (broker/links.py builds it for emails).
"""

from django.urls import path

from grants import views

urlpatterns = [
    path("grants/", views.grant_list, name="grant-list"),
    path("grants/<int:pk>/", views.grant_detail, name="grant-detail"),
    path("grants/<int:pk>/relinquish/", views.grant_relinquish, name="grant-relinquish"),
    path("grants/<int:pk>/revoke/", views.grant_revoke, name="grant-revoke"),
    path("grants/<int:pk>/review/", views.grant_review, name="grant-review"),
    path("review/", views.elevation_review, name="elevation-review"),
]
