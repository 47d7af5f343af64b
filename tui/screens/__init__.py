"""The app's screens: home, launch, monitor, compare, help, error modal, file picker."""
