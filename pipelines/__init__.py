"""eowatch.pipelines"""
