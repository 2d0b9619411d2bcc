"""containers/vllm"""
