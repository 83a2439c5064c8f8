"""The pieces of the fruit feature job: listing, decoding, featurizing, PCA, output.

Shipped to the cluster as a zip (``--py-files``); no Prefect, no boto3, Python 3.9 syntax.
"""
