"""containers/megatron"""
