"""The default training image's URI per region, from the AWS Deep Learning Containers repository, not the SDK.

The default is AWS's unified ``pytorch`` SageMaker training image 2.13 (GPU, Amazon Linux 2023, Python 3.12): the
newest PyTorch training image that still receives security patches. Neither SageMaker Python SDK (2.x stops at
``pytorch-training`` 2.8.0, 3.x likewise) knows the unified images, so ``image_uris.retrieve`` cannot compute
them. The URI is ``<account>.dkr.ecr.<region>.<domain>/pytorch:<tag>`` (the private-ECR form of
docs/get_started/index.md) built from the two documents below, copied verbatim from aws/deep-learning-containers,
branch main, commit e0ecedea6a1c56d6b5914f9cfb2fec5c548e67e0 (2026-08-21):

- ``docs/reference/region_availability.md``, "Deep Learning Containers" table (last changed in
  19c7d1f1b1f2d4c8e9856c35f2e9ab6ad2ae1ded, 2026-08-10): the account per region;
- ``docs/src/data/pytorch/2.13-cuda-sagemaker.yml`` (added in d57c08df9565e1059a02e2d536d78acc11b19cc6,
  2026-07-21): the tags and the support window (``eop``: the end of security patches). The repository name is
  ``pytorch``: that file has no ``ecr_repository`` override, and ``.github/config/image/pytorch/
  2.13-sagemaker-cuda.yml`` publishes ``prod_image: "pytorch:2.13-cu133-amzn2023-sagemaker"``.

The domain comes from botocore's endpoint data, the way the SDK computes it (``amazonaws.com.cn`` in China). To
move to a newer image, paste that image's data file and the current table here, then the block that
``python tests/template/image_mapping.py`` prints into template.yaml.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

SOURCE_REPOSITORY = "aws/deep-learning-containers"
SOURCE_COMMIT = "e0ecedea6a1c56d6b5914f9cfb2fec5c548e67e0"
REPOSITORY = "pytorch"

# docs/src/data/pytorch/2.13-cuda-sagemaker.yml at SOURCE_COMMIT, verbatim.
IMAGE_DATA_YML = """\
framework: PyTorch
version: "2.13"
accelerator: gpu
python: py312
cuda: cu133
os: amzn2023
platform: sagemaker
ga: "2026-07-20"
eop: "2027-07-20"
public_registry: true

tags:
  - "2.13.0-cu133-amzn2023-sagemaker"
  - "2.13-cu133-amzn2023-sagemaker"
"""

# docs/reference/region_availability.md at SOURCE_COMMIT, the "Deep Learning Containers" table, verbatim. (The
# file's second table, SageMaker's algorithm registries for XGBoost, scikit-learn and TEI, does not apply.)
REGION_AVAILABILITY_MD = """\
| Region | Code | Account ID |
| --- | --- | --- |
| US East (Ohio) | us-east-2 | 763104351884 |
| US East (N. Virginia) | us-east-1 | 763104351884 |
| US West (N. California) | us-west-1 | 763104351884 |
| US West (Oregon) | us-west-2 | 763104351884 |
| Africa (Cape Town) | af-south-1 | 626614931356 |
| Asia Pacific (Hong Kong) | ap-east-1 | 871362719292 |
| Asia Pacific (Hyderabad) | ap-south-2 | 772153158452 |
| Asia Pacific (Jakarta) | ap-southeast-3 | 907027046896 |
| Asia Pacific (Malaysia) | ap-southeast-5 | 550225433462 |
| Asia Pacific (Melbourne) | ap-southeast-4 | 457447274322 |
| Asia Pacific (Mumbai) | ap-south-1 | 763104351884 |
| Asia Pacific (New Zealand) | ap-southeast-6 | 633930458069 |
| Asia Pacific (Osaka) | ap-northeast-3 | 364406365360 |
| Asia Pacific (Seoul) | ap-northeast-2 | 763104351884 |
| Asia Pacific (Singapore) | ap-southeast-1 | 763104351884 |
| Asia Pacific (Sydney) | ap-southeast-2 | 763104351884 |
| Asia Pacific (Taipei) | ap-east-2 | 975050140332 |
| Asia Pacific (Thailand) | ap-southeast-7 | 590183813437 |
| Asia Pacific (Tokyo) | ap-northeast-1 | 763104351884 |
| Canada (Calgary) | ca-west-1 | 204538143572 |
| Canada (Central) | ca-central-1 | 763104351884 |
| EU (Frankfurt) | eu-central-1 | 763104351884 |
| EU (Ireland) | eu-west-1 | 763104351884 |
| EU (London) | eu-west-2 | 763104351884 |
| EU (Milan) | eu-south-1 | 692866216735 |
| EU (Paris) | eu-west-3 | 763104351884 |
| EU (Spain) | eu-south-2 | 503227376785 |
| EU (Stockholm) | eu-north-1 | 763104351884 |
| EU (Zurich) | eu-central-2 | 380420809688 |
| Israel (Tel Aviv) | il-central-1 | 780543022126 |
| Mexico (Central) | mx-central-1 | 637423239942 |
| Middle East (Bahrain) | me-south-1 | 217643126080 |
| Middle East (UAE) | me-central-1 | 914824155844 |
| South America (Sao Paulo) | sa-east-1 | 763104351884 |
| China (Beijing) | cn-north-1 | 727897471807 |
| China (Ningxia) | cn-northwest-1 | 727897471807 |
"""

# A full-version tag: the framework stays 2.13.0 for every job. Both tags of the data file are rebuilt and re-pushed
# with AWS's OS and package security patches (twice a week), so neither is a frozen image; only the moving
# "2.13-..." tag may also bring a later 2.13.x torch. A digest (@sha256:) would be frozen, and miss the patches.
PINNED_TAG_PATTERN = re.compile(r"^\d+\.\d+\.\d+-cu\d+-amzn2023-sagemaker$")


def image_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(IMAGE_DATA_YML)
    return data


def pinned_tag() -> str:
    """The data file's full-version tag (``2.13.0-...``), not the moving ``2.13-...`` one."""
    pinned = [tag for tag in image_data()["tags"] if PINNED_TAG_PATTERN.match(tag)]
    if len(pinned) != 1:
        raise ValueError(f"expected one full-version tag in the image data, found {pinned}")
    return pinned[0]


def region_accounts(table: str = REGION_AVAILABILITY_MD) -> dict[str, str]:
    """Region code to the DLC account, from the markdown table."""
    accounts = {}
    for line in table.splitlines()[2:]:
        _, code, account = (cell.strip() for cell in line.strip().strip("|").split("|"))
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", code) or not re.fullmatch(r"\d{12}", account):
            raise ValueError(f"not a region row: {line!r}")
        if code in accounts:
            raise ValueError(f"{code} twice in the table")
        accounts[code] = account
    return accounts


def training_image_uri(region: str, ecr_hostname: str, tag: str | None = None) -> str:
    """``<account>.dkr.<ecr hostname>/pytorch:<tag>``; KeyError where the table has no such region."""
    return f"{region_accounts()[region]}.dkr.{ecr_hostname}/{REPOSITORY}:{tag or pinned_tag()}"
