"""The Dagster layer: thin assets, resources and the staging IO manager over the pipeline."""
