"""chatd: a single-threaded selectors chat server speaking chat/1."""
