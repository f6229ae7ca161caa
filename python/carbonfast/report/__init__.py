"""Where measurements go: the console, JSON, CodeCarbon-compatible CSV, the SQLite history and
HTML reports."""
