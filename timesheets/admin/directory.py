"""The firm's clients, projects and people."""

from django.contrib import admin

from timesheets.models import (
    Client,
    Person,
    Project,
)


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "client", "billing")
    list_filter = ("billing", "client")
    list_select_related = ("client",)
    search_fields = ("code", "name", "client__name")


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "role")
    list_filter = ("role",)
    search_fields = ("email", "name")
