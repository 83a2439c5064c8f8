"""The price and speed tables ``EmrClusterConfig`` starts from: what the run estimate multiplies. An estimate only.

Prices change and differ by region: every figure is a default of a block field, so a team edits its block, not code.
"""

from __future__ import annotations

# On-demand prices in USD per instance-hour, us-east-1, Linux (checked 2026-11; the Graviton rows m6g/m7g/c7g/m8g
# from AWS's price pages, not re-checked from a machine without internet access). EC2 and the EMR surcharge are
# billed separately; both count. Graviton (arm64) per vCPU-hour, EC2 + EMR: m5.xlarge $0.060, m7g.xlarge $0.051
# (-15 %), m8g.xlarge $0.056 (-6 %), c7g.xlarge $0.045 (-24 %): the same work per vCPU costs that much less (one
# Graviton vCPU is a physical core, an x86 vCPU a hyper-thread; this job is not measured on Graviton:
# docs/emr.md "Graviton").
EC2_HOURLY_USD = {
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m7g.xlarge": 0.1632,
    "m6g.xlarge": 0.154,
    "m7g.2xlarge": 0.3264,
    "m7g.4xlarge": 0.6528,
    "c7g.xlarge": 0.145,
    "c7g.2xlarge": 0.289,
    "c7g.4xlarge": 0.578,
    "m8g.xlarge": 0.17952,
    "m8g.2xlarge": 0.35904,
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c6i.2xlarge": 0.34,
    "r5.xlarge": 0.252,
}
EMR_HOURLY_USD = {
    "m5.xlarge": 0.048,
    "m5.2xlarge": 0.096,
    "m5.4xlarge": 0.192,
    "m6i.xlarge": 0.048,
    "m6i.2xlarge": 0.096,
    "m7g.xlarge": 0.0408,
    "m6g.xlarge": 0.0385,
    "m7g.2xlarge": 0.0816,
    "m7g.4xlarge": 0.1632,
    "c7g.xlarge": 0.03625,
    "c7g.2xlarge": 0.07225,
    "c7g.4xlarge": 0.1445,
    "m8g.xlarge": 0.04488,
    "m8g.2xlarge": 0.08976,
    "c5.xlarge": 0.043,
    "c5.2xlarge": 0.085,
    "c6i.2xlarge": 0.085,
    "r5.xlarge": 0.063,
}
# Other regions, as a factor on the us-east-1 prices (on-demand m5/c5 in 2026-11: eu-west-1 m5.xlarge $0.214,
# eu-west-3 $0.224, eu-central-1 $0.230 against $0.192). A region not listed gets no price, only a duration.
REGION_PRICE_FACTORS = {
    "us-east-1": 1.0,
    "us-east-2": 1.0,
    "us-west-2": 1.0,
    "eu-west-1": 1.115,
    "eu-west-3": 1.167,
    "eu-central-1": 1.198,
}
VCPUS = {
    "m5.xlarge": 4,
    "m5.2xlarge": 8,
    "m5.4xlarge": 16,
    "m6i.xlarge": 4,
    "m6i.2xlarge": 8,
    "m7g.xlarge": 4,
    "m6g.xlarge": 4,
    "m7g.2xlarge": 8,
    "m7g.4xlarge": 16,
    "c7g.xlarge": 4,
    "c7g.2xlarge": 8,
    "c7g.4xlarge": 16,
    "m8g.xlarge": 4,
    "m8g.2xlarge": 8,
    "c5.xlarge": 4,
    "c5.2xlarge": 8,
    "c6i.2xlarge": 8,
    "r5.xlarge": 4,
}
# docs/performance.md "Scale on paper": ~200 images/s per m5.xlarge (4 vCPUs), MobileNetV2 alpha 1.0 with decoding.
IMAGES_PER_VCPU_SECOND = 50.0
# spark-submit, the session, weights, PCA, validation and teardown around the featurize stage (docs/performance.md).
JOB_FIXED_MINUTES = 3.0
# RunJobFlow to WAITING: 7-10 minutes measured on EMR 7 with the old bootstrap that pip-installed TensorFlow
# (docs/performance.md); clusters now start without one (the packages ship with the step): kept as the upper side.
PROVISIONING_MINUTES = 8.0
