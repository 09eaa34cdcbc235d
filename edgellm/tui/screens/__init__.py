"""The app's screens: one module per screen, as the app shows them."""
