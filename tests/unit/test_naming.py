from gpupool import naming


def test_default_names_follow_the_conventions():
    assert naming.on_demand_aggregate("L40") == "L40-n3"
    assert naming.nvlink_aggregate("L40") == "L40-n3-NVLink"
    assert naming.spot_aggregate("RTX-A6000") == "RTX-A6000-n3-spot"
    assert naming.runpod_aggregate("RTX-A6000") == "RTX-A6000-n3-runpod"
    assert naming.contract_aggregate("FLA-1") == "Contract-FLA-1"
