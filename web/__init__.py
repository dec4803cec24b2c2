"""The dashboard and JSON API. It reads the store and writes only acknowledgements and silences."""
