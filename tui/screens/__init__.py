"""Screens: replay (collective + training views), compare, and the prompt and help modals."""
