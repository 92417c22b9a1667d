"""The console's views, in the order of `?` and the palette. A new view is a module here and a
line below; its KEY opens it from anywhere."""

from seer_console.views.base import View, ViewKey

VIEWS: tuple[type[View], ...] = ()

__all__ = ["VIEWS", "View", "ViewKey"]
