"""Limits shared by every worker and instance: token buckets and quota usage kept in versioned documents."""
