package fr.esante.socle.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.fhirpath.IFhirPath;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.server.exceptions.UnprocessableEntityException;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.BooleanType;
import org.hl7.fhir.r4.model.Patient;

/**
 * INS-01, rule socle-ins-1: « Le matricule INS ne peut être véhiculé que dans le cas d'une identité qualifiée » (FR Core
 * Patient-INS). A Patient that carries an identifier of an INS system (NIR, NIA, test, demo; not FR Core's NSS slice,
 * the billing NIR typed NH) must have the FR Core identity-reliability status VALI, or it is not stored (HTTP 422).
 * FR Core's own invariant fr-core-1 is the converse (VALI implies INS) and does not refuse this case.
 *
 * <p>Registered by the HAPI FHIR JPA starter through {@code hapi.fhir.custom-interceptor-classes}, like the starter's
 * RepositoryValidatingInterceptor on the same storage pointcuts; loaded from {@code /app/extra-classes}.
 */
@Interceptor
public class InsQualifiedIdentityInterceptor {

	public static final String RULE_ID = "socle-ins-1";
	/** The same text as socle.constants.INS_QUALIFIED_RULE (checked by tests/test_fhir_validator.py). */
	public static final String RULE = "identifier.where((system = 'urn:oid:1.2.250.1.213.1.4.8'"
			+ " or system = 'urn:oid:1.2.250.1.213.1.4.9' or system = 'urn:oid:1.2.250.1.213.1.4.10'"
			+ " or system = 'urn:oid:1.2.250.1.213.1.4.11')"
			+ " and type.coding.where(system = 'http://terminology.hl7.org/CodeSystem/v2-0203' and code = 'NH').empty())"
			+ ".exists() implies extension('https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability')"
			+ ".extension('identityStatus').value.exists(code = 'VALI')";

	private final IFhirPath myFhirPath = FhirContext.forR4Cached().newFhirPath();

	@Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_CREATED)
	public void created(IBaseResource theResource) {
		check(theResource);
	}

	@Hook(Pointcut.STORAGE_PRESTORAGE_RESOURCE_UPDATED)
	public void updated(IBaseResource theOldResource, IBaseResource theNewResource) {
		check(theNewResource);
	}

	/** Refuses a Patient that breaks the rule; any other resource passes. */
	public void check(IBaseResource theResource) {
		if (!(theResource instanceof Patient)) {
			return;
		}
		boolean holds = myFhirPath.evaluateFirst(theResource, RULE, BooleanType.class)
				.map(BooleanType::booleanValue)
				.orElse(false);
		if (!holds) {
			throw new UnprocessableEntityException("INS-01 (" + RULE_ID + "): an INS identifier is carried only by a"
					+ " qualified identity; this Patient's identity status is not VALI");
		}
	}
}
