"""Uniswap V2: AMM maths, live and paper executors, pool feed, deployment, local chain."""
