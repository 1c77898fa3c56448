"""Files in and out, Beam-free: input readers, URL lists, the run directory, rejection files, and
the guarded opener img2dataset's workers use. Import nothing here (those workers import
download_guard and must not pay for more)."""
