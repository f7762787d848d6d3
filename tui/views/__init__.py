"""Views: containers that hand a replay's state at the cursor down to their widgets."""
