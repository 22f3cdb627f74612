-- Catalog step 9 ("move_identity"): tables a move with --replica-identity-full set to
-- REPLICA IDENTITY FULL, each with the identity it had (`d:table` or `n:table`,
-- atoll_core::replica_identity), on the source row. Written before the first ALTER TABLE,
-- read by the restore after the switch, by an abort and by a resume after a kill.
alter table atoll.moves add column identity_restore text[];
