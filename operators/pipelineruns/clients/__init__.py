"""The only code of the pipeline-run controller that talks to the API server or KFP."""
