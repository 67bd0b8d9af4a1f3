-- Fragment, included as shared/meter_dimensions: the event's dimensions, i.e. its
-- properties restricted to its meter's declared dimensions, keys sorted (Map equality is
-- positional). Usually an event carries exactly its meter's dimensions, stored sorted:
-- then they are its properties as they are, without building a new map.
if(mapKeys(properties) = {dimensions:Map(String, Array(String))}[meter], properties,
   mapSort(mapFilter((k, v) -> has({dimensions:Map(String, Array(String))}[meter], k),
                     properties)))
