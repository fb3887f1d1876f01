"""Stage-in (select, bundle, upload inputs) and stage-out (select, download, confined commit of outputs)."""
