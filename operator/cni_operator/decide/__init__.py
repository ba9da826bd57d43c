"""The reconcile's one pure decision: snapshot of the cluster in, everything to do (and the status to write) out."""
