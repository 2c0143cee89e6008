"""The only package that imports SpiffWorkflow: parsing, running, serializing workflows."""
