"""seesaw/rl"""
