"""The local starter kit: ingestion (the model in a child process under a time budget), scoring, reports."""
