"""In-process stand-ins for cluster pieces that cannot be installed on a test machine."""
