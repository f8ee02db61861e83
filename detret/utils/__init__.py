"""Small shared helpers: the device, disk space, progress bars, library log switches, the matplotlib setup."""
