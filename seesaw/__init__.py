"""seesaw"""
