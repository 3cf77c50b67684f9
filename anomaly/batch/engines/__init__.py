"""Where batch scoring runs: in this process (``local``) or on Ray Data (``ray``). Both take
the same plan, chunks and sink, so their outputs are byte-identical."""
