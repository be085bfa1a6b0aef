"""factory_boy factories for the cast of the test suite."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from broker.models import ApprovalStage, Eligibility, Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"group{n}")


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role

    slug = factory.Sequence(lambda n: f"role-{n}")
    name = factory.LazyAttribute(lambda r: f"Role {r.slug}")
    max_duration = timedelta(hours=4)
    default_duration = timedelta(hours=1)
    requires_justification = True
    request_ttl = timedelta(hours=24)
    connector = "django_group"
    connector_config = factory.LazyAttribute(lambda r: {"group": f"{r.slug}-holders"})


class StageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovalStage
        skip_postgeneration_save = True

    role = factory.SubFactory(RoleFactory)
    position = 0
    required = 1

    @factory.post_generation
    def users(self, create, extracted, **kwargs):
        if extracted:
            self.users.set(extracted)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if extracted:
            self.groups.set(extracted)


class EligibilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Eligibility

    role = factory.SubFactory(RoleFactory)
