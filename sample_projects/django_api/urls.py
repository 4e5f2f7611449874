from django.urls import path

from . import views

urlpatterns = [
    path("api/me", views.MeView.as_view()),
    path("api/notes", views.NotesView.as_view()),
    path("healthz", views.HealthView.as_view()),
]
