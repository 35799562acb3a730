"""Sheet-music side of the contract: page ingestion, staff-system detection, unrolled strips and
sheet windows."""
