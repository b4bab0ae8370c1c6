"""chatd as a cluster: several nodes share rooms, names and ids through Redis.

`core.ClusterCore` (with requests.py and feeds.py) is the chat core of a
node; `node.ClusterNode` its link (link.py: RESP3 on the loop, hiredis'
parser) with the lease and the epoch; scripts/ the Lua that changes the
shared state.  Nothing is imported here: hiredis (the `chatd[cluster]`
extra) is needed only when `--cluster` is given.  docs/cluster.md tells how
to run it and what it does on failures.
"""
