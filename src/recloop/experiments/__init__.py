"""On the request path: experiment assignment and the interleaving draft."""
