"""eowatch.models"""
