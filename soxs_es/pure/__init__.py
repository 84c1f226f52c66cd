"""The functional core: values in, values out. No files, no database, no clock, no printing."""
