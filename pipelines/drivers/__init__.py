"""The commands' drivers: curate, download, metadata build, sample data; `finish` assembles and
writes every run's manifest."""
