"""AdaFocusV3: unified spatial-temporal dynamic video recognition, built on cubecrop."""
