"""What the tests share: the real config composed and shrunk, the command line in a subprocess,
files in the real on-disk formats, servers and clusters started and stopped by PID."""
