"""A generator of multi-site synthetic EHR encounters for the five ReMedE tasks.

`profiles` says how hospitals differ (covariate, label, concept, coding and style shift knobs),
`patients` draws latent factors, structured facts, labels and their true probabilities, `notes`
writes the admission and discharge notes in a site's style (`styles`, `vocabulary`), `charlson`
handles comorbidities and coding, and `generate` puts a site's table together.
"""

from sites.synthetic.generate import generate_consortium, generate_site, site_seed
from sites.synthetic.profiles import PROFILES, SiteProfile

__all__ = ["PROFILES", "SiteProfile", "generate_consortium", "generate_site", "site_seed"]
