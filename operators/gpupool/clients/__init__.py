"""The only code of the GPU pool operator that talks to the API server."""
