"""The only code of the pipeline-run controller that talks to the API server or KFP.

``sources`` reads a pipeline source as IR; ``reconciler`` runs a reconcile: it reads, asks
``core/`` what to do and what status to write, and does it. May import ``api/`` and ``core/``.
"""
