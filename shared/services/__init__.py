"""Use cases: submit_job, expand_job, process_chunk, roll_up_status, cancel_job, replay_dead_letters, tenants."""
