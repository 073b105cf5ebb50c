"""CSV imports: a generic engine (`loyalty.imports.engine`) and the transactions importer on it."""
