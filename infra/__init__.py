"""eowatch.infra"""
