"""Portal pages of requests: asking (a role, or more time on a grant), following, deciding; email links.

The paths of requests and of the inbox are fixed (broker/links.py builds them for emails).
"""

from django.urls import path

from approvals import email_views, views

urlpatterns = [
    path("roles/<slug:slug>/request/", views.request_new, name="request-new"),
    path("grants/<int:pk>/extend/", views.grant_extend, name="grant-extend"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request-cancel"),
    path("requests/<int:pk>/decide/", views.request_decide, name="request-decide"),
    path("approvals/", views.inbox, name="approvals-inbox"),
    path("approvals/decided/", views.decided, name="approvals-decided"),
    path("review/unused/", views.eligibility_unused, name="eligibility-unused"),
    path("reviews/", views.reviews, name="reviews"),
    path("reviews/patch/", views.reviews_patch, name="reviews-patch"),
    path("reviews/<int:pk>/decide/", views.review_decide, name="review-decide"),
    path("email-link/<str:token>/", email_views.approval_link, name="approval-link"),
]
