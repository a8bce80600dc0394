# The platform team's own rules, conftest-style: `deny` gates the plan, `warn` is shown.
# Input: `trails plan --json`'s document is `changes`; `resources` holds every resource's
# desired attributes (see README, "Policy").
package main

import rego.v1

# Every AWS resource is billed to a cost centre.
deny contains finding if {
	some resource in input.resources
	startswith(resource.type, "aws.")
	is_object(resource.attributes.tags)
	not resource.attributes.tags["cost-center"]
	finding := {
		"msg": sprintf("%s has no cost-center tag", [resource.address]),
		"address": resource.address,
		"attribute": "tags",
		"fix": "add `cost-center` to the blueprint's tags",
	}
}

# A protected environment's database runs in more than one availability zone.
warn contains finding if {
	input.protect
	some resource in input.resources
	resource.type == "aws.db_instance"
	not resource.attributes.multi_az
	finding := {
		"msg": sprintf("%s runs in one availability zone", [resource.address]),
		"address": resource.address,
		"attribute": "multi_az",
	}
}
