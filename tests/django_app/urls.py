from django.urls import path

from . import views

urlpatterns = [
    path("protected", views.protected),
    path("optional", views.optional),
    path("scoped", views.scoped),
    path("stepped", views.stepped),
    path("health", views.health),
    path("async-protected", views.async_protected),
    path("scoped-class", views.ScopedClassView.as_view()),
    path("open/unmarked", views.unmarked),
    path("api/unmarked", views.unmarked),
    path("drf/protected", views.DRFProtected.as_view()),
    path("drf/optional", views.DRFOptional.as_view()),
    path("drf/scoped", views.DRFScoped.as_view()),
    path("drf/stepped", views.DRFStepped.as_view()),
    path("drf/health", views.DRFHealth.as_view()),
    path("drf/whoami", views.DRFWhoAmI.as_view()),
]
