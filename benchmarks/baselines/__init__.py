"""Baseline chat servers speaking the chat/1 subset the load benchmark drives.

hello/welcome, say/msg in the lobby (ids +1 per room), ping/pong and quit/bye,
written the way most people would first write them, to measure chatd against.
"""
