"""checkpoint_engine"""
