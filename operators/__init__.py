"""eowatch.operators"""
