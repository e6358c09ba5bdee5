"""The main pipeline: ingest, label, train, distill, deploy (its DAG, summary and golden IR).

Imports the five components' KFP interfaces and ``kubeforge.pipelines``; nothing above them.
"""
