//! Issue 24: http_surface.
